"""The policy contract, torch-free: what an exported step function is and how any program runs it.

``policy.metadata`` (what the ONNX file declares), ``policy.runtime`` (``StepFunction`` and ``Policy`` on ONNX
Runtime), ``policy.sampling`` (seeded action sampling in numpy) and ``policy.weights`` (the one initializer patcher,
for weights-only updates). The exporter writes this contract, the actor and deployments read it, the learner uses it
to publish weights; none of them imports another for it. Kept import-light: ``import policy`` loads nothing heavy.
"""
