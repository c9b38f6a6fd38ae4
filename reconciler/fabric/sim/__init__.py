"""fabric/sim"""
