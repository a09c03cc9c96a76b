"""What one unit produced: outputs flattened to names, digests, samples, distances.

May import: audit.errors, audit.config, audit.environment.
"""
