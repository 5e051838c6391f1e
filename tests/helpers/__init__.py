"""Scaffolding the test layers share (one copy each): keys and certificates (`certs`), Pulumi's
mock runtime with a recording monitor (`pulumi_mocks`), valid stack configs (`stack_config`),
running rendered scripts (`scripts`), throwaway NGINX prefixes (`nginx`) and the lab tests'
host snapshots, load and stack values (`lab`). Fixtures live in the conftest.py files."""
