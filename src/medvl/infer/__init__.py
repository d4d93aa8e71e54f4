"""medvl.infer"""
