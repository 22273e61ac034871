"""The GPU layer: devices, streams and events, the GPU ring buffer, staging between devices, OpenGL and CUDA-GL interop, CUDA kernels (``cuda/*.cu``) and their torch references.

Every call has a CPU twin with the same results; nothing here initialises CUDA on import.
"""
