"""airduck.pipeline"""
