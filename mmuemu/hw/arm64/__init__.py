"""arm64 VMSAv8-64, 4 KiB granule, 48-bit VA, 4 levels (L0 → L3), stage 1 EL1&0."""
