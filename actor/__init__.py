"""The actor side: the torch-free ONNX runtime (``policy.runtime``) and the actor process.

Kept import-light on purpose: ``import actor`` loads nothing heavy, so each user pulls in only what it needs.
"""
