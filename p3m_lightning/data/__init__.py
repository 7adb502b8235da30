"""Data: P3M-10k datasets, face obfuscation, privacy audits and a synthetic P3M-10k generator."""
