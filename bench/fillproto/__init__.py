"""Standalone virtual-TLB prototype for bisecting fast mode's fill cost (see proto.py)."""
