"""Datasets: synthetic generators and readers of the real file layouts, one module per science."""
