"""A worker that behaves like the original's, for the interoperation tests.

It declares, names and acknowledges as the original worker does, on RabbitMQ with
aiormq (durable queue `task_lib.server.lobby`, no arguments, prefetch 1, an ack per
message) or on Kafka with aiokafka (topic `lib.server.lobby`, group `superhero_sim`,
the latest offset, commits by the client), and for the host's `Cleaning Game
Records` event reads the game from the Redis keyspace as the original's ETL does.

Prints `ready` once it consumes (on Kafka: once the group gave it partitions), then
one JSON line per game: {"game", "status", "participants", "attacks"}. Runs until
its standard input closes.

    python worker.py rabbit AMQP_URL REDIS_URL
    python worker.py kafka HOST:PORT REDIS_URL
"""

import asyncio
import json
import sys

import redis.asyncio as aioredis

QUEUE = "task_lib.server.lobby"
TOPIC = "lib.server.lobby"
GROUP = "superhero_sim"


def say(line):
    print(line, flush=True)


def record(body):
    """The event: an object, or the original's JSON string holding one."""
    value = json.loads(body)
    if isinstance(value, str):
        value = json.loads(value)
    return value


async def etl(store, body):
    event = record(body)
    if event.get("log_message") != "Cleaning Game Records":
        return
    task = event["task"]
    game, user = task["game_token"], task["user_token"]
    host = await store.get(f"games:{game}:host")
    if host is None or host.decode() != user:
        return
    status = await store.get(f"games:{game}:status")
    players = await store.smembers(f"games:{game}")
    logs = await store.lrange(f"games:{game}:logs", 0, -1)
    say(json.dumps({
        "game": game,
        "status": status.decode() if status else None,
        "participants": len(players),
        "attacks": len(logs),
    }))


async def until_stdin_closes():
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)


async def rabbit(url, store):
    import aiormq

    connection = await aiormq.connect(url)
    channel = await connection.channel()
    await channel.basic_qos(prefetch_count=1)
    declared = await channel.queue_declare(QUEUE, durable=True)

    async def on_message(message):
        await etl(store, message.body)
        await message.channel.basic_ack(message.delivery.delivery_tag)

    await channel.basic_consume(declared.queue, on_message)
    say("ready")
    await until_stdin_closes()
    await connection.close()


async def kafka(servers, store):
    from aiokafka import AIOKafkaConsumer
    from aiokafka.abc import ConsumerRebalanceListener

    class Ready(ConsumerRebalanceListener):
        async def on_partitions_revoked(self, revoked):
            pass

        async def on_partitions_assigned(self, assigned):
            if assigned:
                say("ready")

    consumer = AIOKafkaConsumer(
        bootstrap_servers=servers,
        group_id=GROUP,
        auto_offset_reset="latest",
    )
    await consumer.start()
    consumer.subscribe([TOPIC], listener=Ready())

    async def consume():
        async for message in consumer:
            await etl(store, message.value)

    task = asyncio.ensure_future(consume())
    await until_stdin_closes()
    task.cancel()
    await consumer.stop()


async def main():
    kind, address, redis_url = sys.argv[1:4]
    store = aioredis.from_url(redis_url)
    if kind == "rabbit":
        await rabbit(address, store)
    elif kind == "kafka":
        await kafka(address, store)
    else:
        sys.exit(f"unknown broker {kind!r}: rabbit or kafka")
    await store.aclose()


asyncio.run(main())
