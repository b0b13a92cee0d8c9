"""Stage 2 input: WebDataset shards (local or s3://) -> TDN batches for training and evaluation.

    shard-NNNNNN.tar --loader.py--> (sample metadata, JPEG bytes per frame)  checked against contract.py
                     --transforms.py--> crop box + flip per sample, decided before any pixel is decoded
                     --jpeg_decode.py--> uint8 crops (T*5, S, S, 3) decoded straight at the crop
                     --loader.py--> batch uint8 (N, T, 5, 3, S, S) + labels; normalised on the device
"""
