"""lottery: lottery-ticket research on PyTorch Lightning."""

from lottery.callback import LotteryTicket
from lottery.loop import prune
from lottery.ticket import Ticket, TicketFormatError

__all__ = ["LotteryTicket", "Ticket", "TicketFormatError", "prune"]
__version__ = "0.1.0"
