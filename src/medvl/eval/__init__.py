"""medvl.eval"""
