"""airduck.bronze"""
