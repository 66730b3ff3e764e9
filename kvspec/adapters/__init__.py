"""Adapters that make third-party engines kvspec targets.

Importing this package registers every adapter's target name; an adapter imports its engine only
when the target is resolved, so registration never needs the engine installed.
"""
