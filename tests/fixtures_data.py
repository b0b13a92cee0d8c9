"""Generated datasets for tests (synthetic motion videos in official layouts)."""
