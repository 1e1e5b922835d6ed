from setuptools import find_packages, setup

setup(
    name="ai500",
    version="0.1.0",
    description="Scalable reference implementation of the HPC AI500 benchmark suite",
    python_requires=">=3.10",
    packages=find_packages(include=["ai500", "ai500.*"]),
    package_data={"ai500": ["configs/*.yaml"]},
    # TensorFlow and Horovod are installed by the Makefile, not here: the CPU or GPU build of
    # TensorFlow is the site's choice, and Horovod must be compiled against the installed one.
    install_requires=["numpy<2", "h5py", "psutil", "mpi4py", "pyyaml", "tqdm", "matplotlib"],
    entry_points={"console_scripts": ["ai500-run=ai500.run:main",
                                      "ai500-aggregate=ai500.aggregate:main",
                                      "ai500-report=ai500.report:main"]},
)
