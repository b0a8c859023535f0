"""``python -m tuner_callbacks.alerts test``: checks the bot token and chat, and sends a test message.

The token is read from ``TELEGRAM_BOT_TOKEN`` only: a command-line argument would end up in the shell history
and in ``ps``. Exit status: 0 sent, 2 token or chat rejected (or not set), 1 Telegram unreachable.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys

from tuner_callbacks.alerts.channels import BadCredentialsError, ChannelError, RetryableError
from tuner_callbacks.alerts.dispatcher import CHAT_ENV, TOKEN_ENV
from tuner_callbacks.alerts.message import Alert
from tuner_callbacks.alerts.telegram_channel import TELEGRAM_API, TelegramChannel


async def _check_and_send(channel: TelegramChannel) -> str:
    try:
        description = await channel.check()
        await channel.send(Alert("info", "Smart Tuner test message",
                                 [f"Alerts from {socket.gethostname()} reach this chat."], emoji="✅", kind="test"))
        return description
    finally:
        await channel.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tuner_callbacks.alerts", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    test = commands.add_parser("test", help=f"check {TOKEN_ENV} and the chat, and send a test message")
    test.add_argument("--chat-id", default=os.environ.get(CHAT_ENV), help=f"default: {CHAT_ENV}")
    test.add_argument("--base-url", default=TELEGRAM_API, help="Bot API root (default: %(default)s)")
    test.add_argument("--timeout", type=float, default=10.0, help="seconds per request (default: %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    token = os.environ.get(TOKEN_ENV)
    if not token:
        print(f"error: set {TOKEN_ENV} to the token @BotFather gave you", file=sys.stderr)
        return 2
    if not args.chat_id:
        print(f"error: set {CHAT_ENV} or pass --chat-id (your user id, a group id, or @channel)", file=sys.stderr)
        return 2
    channel = TelegramChannel(token, args.chat_id, base_url=args.base_url, timeout_s=args.timeout, min_interval_s=0)
    try:
        description = asyncio.run(_check_and_send(channel))
    except BadCredentialsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except RetryableError as error:
        print(f"error: could not reach {args.base_url}: {error}", file=sys.stderr)
        return 1
    except ChannelError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"ok: test message sent as {description}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
