"""engine/lease"""
