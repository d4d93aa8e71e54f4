"""medvl.cli"""
