"""A publisher that behaves like the original server's logging transport, for the
interoperation tests: for every completed game in the Redis keyspace, one
`Cleaning Game Records` event per participant, in the original's envelope and
double-encoded (a JSON string holding the object), published as the original does:
on RabbitMQ with aiormq to the default exchange with routing key
`task_lib.server.lobby`, on Kafka with aiokafka to topic `lib.server.lobby`.

Prints the number of games and of events published.

    python publisher.py rabbit AMQP_URL REDIS_URL
    python publisher.py kafka HOST:PORT REDIS_URL
"""

import asyncio
import datetime
import json
import sys

import redis.asyncio as aioredis

QUEUE = "task_lib.server.lobby"
TOPIC = "lib.server.lobby"


async def completed_games(store):
    games = []
    async for key in store.scan_iter(match="games:*:status"):
        if await store.get(key) == b"Completed":
            games.append(key.decode().split(":")[1])
    return games


def envelope(module, game, user):
    record = {
        "level": "INFO",
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "name": f"{module}.{TOPIC}",
        "log_message": "Cleaning Game Records",
        "task": {"game_token": game, "user_token": user},
    }
    return json.dumps(json.dumps(record)).encode()


async def events(store, module):
    out = []
    games = await completed_games(store)
    for game in games:
        for user in await store.smembers(f"games:{game}"):
            out.append(envelope(module, game, user.decode()))
    return games, out


async def rabbit(url, messages):
    import aiormq

    connection = await aiormq.connect(url)
    channel = await connection.channel()
    await channel.confirm_delivery()
    await channel.queue_declare(QUEUE, durable=True)
    for body in messages:
        await channel.basic_publish(
            body,
            exchange="",
            routing_key=QUEUE,
            properties=aiormq.spec.Basic.Properties(delivery_mode=2),
        )
    await connection.close()


async def kafka(servers, messages):
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=servers)
    await producer.start()
    try:
        for body in messages:
            await producer.send_and_wait(TOPIC, body)
    finally:
        await producer.stop()


async def main():
    kind, address, redis_url = sys.argv[1:4]
    store = aioredis.from_url(redis_url)
    games, messages = await events(store, kind)
    await store.aclose()
    if kind == "rabbit":
        await rabbit(address, messages)
    elif kind == "kafka":
        await kafka(address, messages)
    else:
        sys.exit(f"unknown broker {kind!r}: rabbit or kafka")
    print(json.dumps({"games": len(games), "events": len(messages)}), flush=True)


asyncio.run(main())
