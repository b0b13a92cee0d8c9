"""Stage 1, the shard job: dataset annotations + videos -> WebDataset shards of pre-sampled 5-frame windows.

    DatasetIndex (pipeline.datasets)                          one Ray Data task per shard (job.py)
      VideoRecord(path, label, ...) --sampling.py--> SampledClip: T windows of 5 frame indices per view
                                   --decode.py----> only those frames, resized, as JPEG bytes (probe, then one pass)
                                   --writer.py----> shard-NNNNNN.tar (+ sidecar) written atomically, local or s3://
                                   --job.py-------> <split>/index.json, quarantine.jsonl, job summary

The on-disk contract (split index, shard sidecar, sample metadata, job summary) is defined once, in contract.py;
every reader and writer goes through its dataclasses.
"""
