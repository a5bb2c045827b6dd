"""airduck.quality"""
