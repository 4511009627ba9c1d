import matplotlib

matplotlib.use("Agg")  # headless: every figure renders without a display
