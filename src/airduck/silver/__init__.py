"""airduck.silver"""
