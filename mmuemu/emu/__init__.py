"""The emulator: the only package that imports Unicorn.

It wires a Unicorn CPU to the hardware model (page walks on TLB fills, in
native code) and to the kernel model (page faults, syscalls).
"""
