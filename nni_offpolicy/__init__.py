"""nni-offpolicy: P-DARTS progressive shrinking with an off-policy REINFORCE controller, inside NNI 3.0."""
__version__ = "0.1.0"
