"""airduck.lake"""
