"""Stage 2 input: WebDataset shards (local or s3://) -> TDN batches for training and evaluation.

index.json (shards/contract.py) --planning.py--> each rank's and loader worker's shard slices, batch count
shard-NNNNNN.tar --shard_reading.py--> RawSample (SampleMeta, undecoded JPEG bytes)
    --transforms.py--> crop box + flip per sample, decided before any pixel is decoded
    --batch_decode.py + jpeg_decode.py--> uint8 crops (T*5, S, S, 3) decoded straight at the crop
    --train_loader.py / eval_loader.py--> batch (N, T, 5, 3, S, S) + labels   (settings: config.py)
decode: device -- workers ship device_batch.EncodedBatch (JPEG bytes + boxes); prefetch.py decodes it on the
    training device one batch ahead (device_batch.decode_batch: one nvJPEG call, crop/resize/flip/normalise)
"""
