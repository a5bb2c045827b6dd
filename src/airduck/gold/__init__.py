"""airduck.gold"""
