"""airduck.serve"""
