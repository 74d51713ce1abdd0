"""Operations tests: metrics, systemd integration, contrib manifests."""
