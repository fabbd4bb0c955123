"""The ground floor: what every other part of Depot builds on, and what a DP node runs on alone.

Nothing here imports another part of `portal`, Flask, the database or Redis (the import contract
in `.importlinter` holds it so): the error family, asset names and library paths, signed download
links, the content-root walker and the hashing pool.
"""
