// The space as an auditor needs it: chain id, RPC URL, contract addresses, custodians. Read from
// GET /api/space/ (public); if the node cannot be asked, from what the portal's page carries.
import { useQuery } from "@tanstack/react-query";
import { createPublicClient, http, type PublicClient } from "viem";
import { boot, type Space } from "../../api";

// GET /api/space/ as the server documents it (components Space, SpaceContract, SpaceToken).
export interface SpaceDocument {
  chain_id: number;
  rpc_url: string;
  contracts: { name: string; address: string; deployed_block?: number | null }[];
  token: { address: string; symbol: string; decimals: number } | null;
  custodians: { address: string; valid_from_block: number; valid_until_block?: number | null }[];
}

// The explorer looks contracts up by name.
export function spaceFrom(document: SpaceDocument): Space {
  const deployed = document.contracts.map((c) => c.deployed_block).filter((b): b is number => typeof b === "number");
  return {
    chain_id: document.chain_id,
    rpc_url: document.rpc_url,
    contracts: Object.fromEntries(document.contracts.map((c) => [c.name, c.address])),
    token: document.token?.address ?? null,
    custodians: document.custodians.map((c) => ({ address: c.address, valid_from_block: c.valid_from_block })),
    from_block: deployed.length ? Math.min(...deployed) : 0,
  };
}

export async function fetchSpace(): Promise<Space> {
  try {
    const response = await fetch("/api/space/", { headers: { Accept: "application/json" }, credentials: "same-origin" });
    if (response.ok) return spaceFrom((await response.json()) as SpaceDocument);
  } catch {
    // fall back below
  }
  return boot().space;
}

const clients = new Map<string, PublicClient>();

export function chainClient(space: Space): PublicClient {
  const key = `${space.chain_id}:${space.rpc_url}`;
  let client = clients.get(key);
  if (!client) {
    client = createPublicClient({
      chain: {
        id: space.chain_id,
        name: `Redlake ${space.chain_id}`,
        nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
        rpcUrls: { default: { http: [space.rpc_url] } },
      },
      transport: http(space.rpc_url, { batch: true }),
    });
    clients.set(key, client);
  }
  return client;
}

export function useSpace() {
  return useQuery({ queryKey: ["space"], queryFn: fetchSpace, staleTime: 5 * 60_000 });
}
