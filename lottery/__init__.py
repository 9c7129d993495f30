"""lottery: lottery-ticket research on PyTorch Lightning."""

from lottery.callback import LotteryTicket
from lottery.export import export
from lottery.plan import prune
from lottery.nvml import skip_nvml_probe_without_gpu
from lottery.ticket import Ticket, TicketFormatError

skip_nvml_probe_without_gpu()  # after Lightning's import, which sets the variable

__all__ = ["LotteryTicket", "Ticket", "TicketFormatError", "export", "prune"]
__version__ = "0.1.0"
