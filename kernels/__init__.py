"""CUDA C++ sources of the ``cupy`` backend, shipped inside the wheel as ``gpuivp.kernels``."""
