"""medvl.train"""
