"""Driving a graph from outside: pipeline files, the actor catalogue, the CLI and the HTTP control plane.
"""
