from setuptools import find_packages, setup

setup(
    name="nni-offpolicy",
    version="0.1.0",
    description="P-DARTS progressive shrinking + an off-policy REINFORCE controller as an NNI 3.0 NAS strategy",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["nni_offpolicy", "nni_offpolicy.*", "search_spaces", "search_spaces.*"]),
    include_package_data=True,
    install_requires=[
        "torch==2.14.1",
        "torchvision==0.29.1",
        "nni==3.0",
        "pytorch-lightning>=2.0,<3",
        "thop",
        "tensorboard",
        "setuptools<81",  # nnictl imports pkg_resources
        "filelock<3.12",  # nni 3.0 subclasses filelock internals
        "scikit-learn",
        "pyyaml",
        "matplotlib",
        "tqdm",
    ],
    extras_require={
        # onnx: tests build tiny NB301-shaped models with onnx.helper (tests/test_surrogate.py)
        "test": ["pytest>=7", "pytest-xdist>=3", "onnx"],
        # onnxruntime: the NAS-Bench-301 surrogate judge (lookup/ablate --surrogate), nothing else
        "bench": ["onnxruntime"],
    },
    entry_points={"console_scripts": ["nni-offpolicy=nni_offpolicy.cli:main"]},
)
