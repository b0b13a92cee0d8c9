"""Rows published in the TDN paper (Wang et al., CVPR 2021), quoted for display beside our own results.

Transcribed from /work/shared/paper/tdn_cvpr2021.txt; only the TDN rows and the TSN / TSM baselines the
project can also produce are kept. Accuracies are percentages; GFLOPs are per view as the paper prints them
("36" with views 30 means the paper's "36x30"). Tables render these with the method suffixed "(paper)".
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PaperRow:
    table: str  # "2" | "3" | "4" | "5"
    dataset: str  # "ssv1" | "ssv2" | "kinetics" | "ucf101" | "hmdb51"
    method: str
    backbone: str
    frames: str  # "8", "16", "8+16"
    views: int  # clips x crops (1 for Something-Something, 30 for Kinetics 10x3)
    gflops: float | None  # per view
    top1_pct: float | None
    top5_pct: float | None = None
    pretrain: str = ""
    ms_per_video: float | None = None
    views_label: str = ""  # Table 5's "Frames x Clips x Crops"


# Table 2 (Something-Something V1 and V2, 1 clip x centre crop 224).
TABLE2 = (
    PaperRow("2", "ssv1", "TSN-RGB", "BNInception", "8", 1, 16, 19.5, None),
    PaperRow("2", "ssv1", "TSM", "ResNet50", "8+16", 1, 98, 49.7, 78.5),
    PaperRow("2", "ssv1", "TDN", "ResNet50", "8", 1, 36, 52.3, 80.6),
    PaperRow("2", "ssv1", "TDN", "ResNet50", "16", 1, 72, 53.9, 82.1),
    PaperRow("2", "ssv1", "TDN", "ResNet50", "8+16", 1, 108, 55.1, 82.9),
    PaperRow("2", "ssv1", "TDN", "ResNet101", "8", 1, 66, 54.1, 81.9),
    PaperRow("2", "ssv1", "TDN", "ResNet101", "16", 1, 132, 55.3, 83.3),
    PaperRow("2", "ssv1", "TDN", "ResNet101", "8+16", 1, 198, 56.8, 84.1),
    PaperRow("2", "ssv2", "TDN", "ResNet50", "8", 1, 36, 64.0, 88.8),
    PaperRow("2", "ssv2", "TDN", "ResNet50", "16", 1, 72, 65.3, 89.5),
    PaperRow("2", "ssv2", "TDN", "ResNet50", "8+16", 1, 108, 67.0, 90.3),
    PaperRow("2", "ssv2", "TDN", "ResNet101", "8", 1, 66, 65.8, 90.2),
    PaperRow("2", "ssv2", "TDN", "ResNet101", "16", 1, 132, 66.9, 90.9),
    PaperRow("2", "ssv2", "TDN", "ResNet101", "8+16", 1, 198, 68.2, 91.6),
)

# Table 3 (Kinetics-400 validation, 10 clips x 3 crops).
TABLE3 = (
    PaperRow("3", "kinetics", "TSM", "ResNet50", "16", 30, 65, 74.7, 91.4),
    PaperRow("3", "kinetics", "TDN", "ResNet50", "8", 30, 36, 76.6, 92.8),
    PaperRow("3", "kinetics", "TDN", "ResNet50", "16", 30, 72, 77.5, 93.2),
    PaperRow("3", "kinetics", "TDN", "ResNet50", "8+16", 30, 108, 78.4, 93.6),
    PaperRow("3", "kinetics", "TDN", "ResNet101", "8", 30, 66, 77.5, 93.6),
    PaperRow("3", "kinetics", "TDN", "ResNet101", "16", 30, 132, 78.5, 93.9),
    PaperRow("3", "kinetics", "TDN", "ResNet101", "8+16", 30, 198, 79.4, 94.4),
)

# Table 4 (appendix A: UCF101 / HMDB51, mean accuracy over the three splits; 16-frame TDN from Kinetics).
TABLE4 = (
    PaperRow("4", "ucf101", "TSN", "Inception V2", "", 0, None, 86.4, pretrain="ImageNet"),
    PaperRow("4", "hmdb51", "TSN", "Inception V2", "", 0, None, 53.7, pretrain="ImageNet"),
    PaperRow("4", "ucf101", "TSM", "ResNet50", "", 0, None, 96.0, pretrain="Kinetics"),
    PaperRow("4", "hmdb51", "TSM", "ResNet50", "", 0, None, 73.2, pretrain="Kinetics"),
    PaperRow("4", "ucf101", "TDN", "ResNet50", "16", 0, None, 97.4, pretrain="ImageNet + Kinetics"),
    PaperRow("4", "hmdb51", "TDN", "ResNet50", "16", 0, None, 76.3, pretrain="ImageNet + Kinetics"),
)

# Table 5 (appendix B: running time on a Tesla V100, batch 16, loading included; Something-Something V1 top-1).
TABLE5 = (
    PaperRow("5", "ssv1", "TSN", "ResNet50", "8", 1, None, 19.7, ms_per_video=7.9, views_label="8x1x1"),
    PaperRow("5", "ssv1", "TSM", "ResNet50", "16", 1, None, 47.2, ms_per_video=16.7, views_label="16x1x1"),
    PaperRow("5", "ssv1", "S-TDM", "ResNet50", "8", 1, None, 49.5, ms_per_video=12.3, views_label="8x1x1"),
    PaperRow("5", "ssv1", "L-TDM", "ResNet50", "8", 1, None, 48.9, ms_per_video=15.8, views_label="8x1x1"),
    PaperRow("5", "ssv1", "TDN", "ResNet50", "8", 1, None, 52.3, ms_per_video=22.1, views_label="8x1x1"),
)
