"""Benchmark scripts; results (JSON + Markdown) go to bench/results/ together with the machine they ran on."""
