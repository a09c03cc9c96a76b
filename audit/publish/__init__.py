"""Published text: the markdown report, its heatmap, the release changelog.

May import: audit.judge and everything it may import.
"""
