"""airduck.demo"""
