"""nni-offpolicy: P-DARTS progressive shrinking with an off-policy REINFORCE controller, inside NNI 3.0."""
__version__ = "0.1.0"

from nni_offpolicy.nni_glue.harmless import install as _filter_harmless_messages

_filter_harmless_messages()  # before anything imports NNI; see nni_glue/harmless.py for each message and why


def __getattr__(name: str):
    # ProgressiveOffPolicy pulls in NNI's one-shot machinery; import it only when asked for.
    if name in ("ProgressiveOffPolicy", "SearchData"):
        from nni_offpolicy.nni_glue import strategy
        return getattr(strategy, name)
    raise AttributeError(name)
