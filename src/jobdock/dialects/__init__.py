"""The seed products' APIs, served under `/compat/<dialect>` as their documents describe.

A dialect is a translation: it reads a request the product's way, asks the
engine, and renders jobs in the product's JSON. It owns no tables and no
rules, and it renders its own error bodies.
"""
