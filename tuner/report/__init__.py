"""What a search reports: which trial is best, the Pareto front, progress lines, the summary, compare, export."""
