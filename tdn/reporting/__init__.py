"""Paper-style tables aggregated from recorded evaluation results (never typed by hand), beside the paper's rows."""
