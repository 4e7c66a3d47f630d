"""Packaging for dnntopo: the domain package, the hpc runtime beneath it, and two console scripts."""
import re
from pathlib import Path

from setuptools import find_packages, setup

VERSION = re.search(r'__version__ = "([^"]+)"',
                    (Path(__file__).parent / "dnntopo" / "__init__.py").read_text()).group(1)

setup(
    name="dnntopo",
    version=VERSION,
    description="Topology of deep neural networks (functional graphs, persistent homology) on HPC clusters",
    long_description=(Path(__file__).parent / "README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["dnntopo", "dnntopo.*", "hpc", "hpc.*"]),
    install_requires=[
        "numpy>=1.23",
        "scipy>=1.9",
        "torch>=2.0",
        "h5py>=3.7",
        "giotto-ph>=0.2.2",
        "gudhi>=3.8",
        "numba>=0.58",
        "matplotlib>=3.6",
        "tqdm>=4.60",
        "threadpoolctl>=3",
    ],
    extras_require={
        "mpi": ["mpi4py>=3.1"],
        "ripser": ["ripser>=0.6"],
        "slurm": ["submitit>=1.4"],
        "imagenet": ["pillow>=9"],
        "test": ["pytest>=7", "pytest-timeout>=2", "ripser>=0.6", "psutil>=5", "pillow>=9"],
        "all": ["mpi4py>=3.1", "ripser>=0.6", "submitit>=1.4", "pillow>=9", "psutil>=5"],
    },
    entry_points={"console_scripts": [
        "dnntopo=dnntopo.cli:main",
        "dnntopo-dipha=dnntopo.dipha.cli:main",
    ]},
)
