"""Packaging for tfglo: LOLNeRF and NeRF-VAE in TensorFlow 2 / Keras 3."""

import setuptools

# The stack is pinned to the versions that were checked together (see README, "Pinned stack").
INSTALL_REQUIRES = [
    "tensorflow==2.21.*",
    "keras>=3.10,<4",
    "mediapipe==1.2.2",
    "tensorflow-graphics==2021.12.3",
    "tensorboard==2.21.*",
    "tensorflow-serving-api==2.21.*",
    "absl-py>=2.1",
    "numpy>=2,<3",
    "scipy>=1.13",
    "pillow>=10",
    "scikit-image>=0.24",
    "trimesh>=4",
]

EXTRAS_REQUIRE = {
    "test": [
        "pytest>=8",
        "hypothesis>=6.100",
        "pytest-xdist>=3.5",
        "ruff==0.17.6",
    ],
}

setuptools.setup(
    name="tfglo",
    version="0.1.0",
    description=(
        "LOLNeRF and NeRF-VAE in TensorFlow/Keras: 3D models of object classes from single views."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.11",
    packages=setuptools.find_packages(include=["tfglo", "tfglo.*"]),
    package_data={"tfglo.pose": ["assets/*.task", "assets/*.tflite", "assets/NOTICE"]},
    include_package_data=True,
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={
        "console_scripts": [
            "tfglo-prepare=tfglo.prepare:run",
            "tfglo-train=tfglo.train:run",
            "tfglo-evaluate=tfglo.evaluate:run",
            "tfglo-render=tfglo.render:run",
            "tfglo-lift=tfglo.lift:run",
            "tfglo-export=tfglo.export:run",
            "tfglo-bench=tfglo.bench:run",
        ]
    },
)
