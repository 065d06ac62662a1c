"""Recording store in any S3-compatible bucket (AWS S3, Ceph RGW, MinIO, Wasabi...), verified on every upload."""
