"""Network transport: RTP (RFC 3550), ST 2110-20 video (RFC 4175), ST 2110-30 audio, SDP."""
