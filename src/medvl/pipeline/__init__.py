"""medvl.pipeline: named steps from raw data to a comparison report, rerun only when changed."""
