"""Offline tools on files: ``face_expr reconstruct`` (images), ``face_expr video`` (videos, bags)."""
